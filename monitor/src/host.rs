//! Facts about the host the records name: the host name and user names.

use std::{
    collections::HashMap,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

/// uid → user name from a passwd file, cached. A miss rereads the file at most every
/// [`UserNames::REREAD_AFTER`], so users created after start-up get their names.
pub struct UserNames {
    path: PathBuf,
    names: HashMap<u32, String>,
    loaded: Option<Instant>,
}

impl UserNames {
    pub const REREAD_AFTER: Duration = Duration::from_secs(30);

    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            names: HashMap::new(),
            loaded: None,
        }
    }

    pub fn name(&mut self, uid: u32) -> Option<String> {
        if let Some(n) = self.names.get(&uid) {
            return Some(n.clone());
        }
        if self
            .loaded
            .is_none_or(|t| t.elapsed() >= Self::REREAD_AFTER)
        {
            self.reload();
            return self.names.get(&uid).cloned();
        }
        None
    }

    fn reload(&mut self) {
        self.loaded = Some(Instant::now());
        match fs::read_to_string(&self.path) {
            Ok(text) => self.names = parse_passwd(&text),
            Err(e) => log::debug!("cannot read {}: {e}", self.path.display()),
        }
    }
}

/// `name:password:uid:gid:...` lines; the first name of a uid wins (as getpwuid does).
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if let Ok(uid) = uid.parse() {
            names.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    names
}

/// The host name (`gethostname(2)`), lossy UTF-8.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname NUL-terminates when the
    // name fits, and the last byte stays 0 because we pass one byte less.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return String::from("unknown");
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn passwd_parsing() {
        let names = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# c\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbad\ntoor:x:0:0::/:/bin/sh\n",
        );
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn user_names_from_file() {
        let dir = TempDir::new();
        let path = dir.0.join("passwd");
        fs::write(
            &path,
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n",
        )
        .unwrap();
        let mut u = UserNames::new(&path);
        assert_eq!(u.name(1000).as_deref(), Some("alice"));
        assert_eq!(u.name(0).as_deref(), Some("root"));
        assert_eq!(u.name(4711), None);
    }

    #[test]
    fn hostname_is_known() {
        assert!(!hostname().is_empty());
    }
}
