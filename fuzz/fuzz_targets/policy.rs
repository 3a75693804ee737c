//! Policy files (`--policy`, `monitor check-policy`): a bad one is an error naming file, line and
//! key, never a panic; a good one's effective policy (what `check-policy` prints) loads again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::from_toml_str(text, "fuzz.toml") {
        Ok(policy) => {
            let _ = policy.programs();
            let _ = policy.context_programs();
            let effective = policy.to_effective_toml();
            if let Err(e) = Policy::from_toml_str(&effective, "effective.toml") {
                panic!("the effective policy does not load: {e}\n{effective}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
