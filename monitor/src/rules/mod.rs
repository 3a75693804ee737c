//! The rules: one file each, holding the rule's policy section (its own keys besides `enabled`,
//! `severity` and `exceptions`, their input shape and validation) and its judgement, with its
//! tests. [`crate::detect::Detector`] runs them with the shared preamble (enabled, exceptions,
//! severity, dedup), so a rule only says what it finds.
//!
//! Adding a rule: a file here implementing [`Section`] and [`Rule`], a [`RuleId`] (part of the
//! output contract), one line in the `rules!` list below, its section in
//! `policy/default_policy.toml`, and its docs (docs/policy.md, docs/alerts.md) and fixtures.

pub mod egress;
pub mod listen;
pub mod shell;

use std::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    enrich::Context,
    matcher::{RuleSettings, Subject},
    record::{EventType, RuleId},
    validate::{PolicyError, Source},
};

/// A rule's section of the policy file, `[rules.<key>]`.
pub trait Section: Sized {
    /// The file's shape of the section: every key optional, `deny_unknown_fields`.
    type Input: Default + DeserializeOwned + Serialize;

    /// Validates the section; keys it leaves out come from `base` (the embedded default's
    /// section; `None` only while the embedded default itself is parsed). `key` is
    /// `rules.<key>`, for error messages.
    fn validate(
        input: Self::Input,
        base: Option<&Self>,
        key: &str,
        src: &Source<'_>,
    ) -> Result<Self, PolicyError>;

    /// The input that validates back to this section, every key set (`monitor check-policy`).
    fn to_input(&self) -> Self::Input;
}

/// A detection.
pub trait Rule: fmt::Debug + Send + Sync {
    fn id(&self) -> RuleId;

    /// The event kinds it judges; two rules may judge the same kind.
    fn judges(&self) -> &'static [EventType];

    fn settings(&self) -> &RuleSettings;

    /// At most one finding per event. The detector has already checked that the rule is enabled;
    /// it matches the rule's exceptions against the finding's subject afterwards.
    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>>;
}

/// What a rule found in an event, before exceptions, severity and dedup.
#[derive(Clone, Debug)]
pub struct Finding<'e> {
    pub title: String,
    /// The dedup key (docs/alerts.md lists each rule's).
    pub dedup: String,
    /// What the rule's exceptions are matched against.
    pub subject: Subject<'e>,
}

/// The executable for titles and dedup keys.
pub(crate) fn exe_key(exe: Option<&str>) -> &str {
    exe.unwrap_or("?")
}

/// Declares the rules: the `[rules]` table's shape and its validation, and the list the detector
/// runs, in this order.
macro_rules! rules {
    ($($key:ident: $rule:ty),+ $(,)?) => {
        /// Every rule, configured.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Rules {
            $(pub $key: $rule,)+
        }

        /// The `[rules]` table of a policy file.
        #[derive(Debug, Default, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct RulesInput {
            $(#[serde(default)] $key: <$rule as Section>::Input,)+
        }

        impl Rules {
            pub fn validate(
                input: RulesInput,
                base: Option<&Self>,
                src: &Source<'_>,
            ) -> Result<Self, PolicyError> {
                Ok(Self {
                    $($key: <$rule as Section>::validate(
                        input.$key,
                        base.map(|b| &b.$key),
                        concat!("rules.", stringify!($key)),
                        src,
                    )?,)+
                })
            }

            pub fn to_input(&self) -> RulesInput {
                RulesInput {
                    $($key: self.$key.to_input(),)+
                }
            }

            /// How many rules there are.
            pub const COUNT: usize = [$(stringify!($key)),+].len();

            /// Every rule, in declaration order.
            pub fn all(&self) -> [&dyn Rule; Self::COUNT] {
                [$(&self.$key as &dyn Rule),+]
            }
        }
    };
}

rules! {
    unexpected_listen: listen::UnexpectedListen,
    webserver_egress: egress::WebserverEgress,
    webserver_shell: shell::WebserverShell,
}
