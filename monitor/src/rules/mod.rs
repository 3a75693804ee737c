//! The rules: one file each, holding the rule's policy section (its own keys besides `enabled`,
//! `severity` and `exceptions`, their input shape and validation) and its judgement, with its
//! tests. [`crate::detect::Detector`] runs them with the shared preamble (enabled, exceptions,
//! severity, dedup), so a rule only says what it finds.
//!
//! Adding a rule: a file here implementing [`Section`] and [`Rule`], a [`RuleId`] (part of the
//! output contract), one line in the `rules!` list below, its section in
//! `policy/default_policy.toml`, and its docs (docs/policy.md, docs/alerts.md) and fixtures.

pub mod egress;
pub mod egress_listed;
pub mod inbound_tor;
pub mod listen;
pub mod shell;
pub mod ssh_login_listed;
pub mod ssh_login_malicious;
pub mod ssh_login_tor;

use std::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    enrich::Context,
    matcher::{RuleSettings, Subject},
    record::{EnrichmentInfo, EventRecord, EventType, LoginInfo, MatchKind, RuleId, WebServerVia},
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
    /// `webserver_shell`: how the shell was recognised.
    pub shell_match: Option<MatchKind>,
    /// The web-server rules: how the process was found to be under a web server.
    pub web_server_via: Option<WebServerVia>,
}

/// The executable for titles and dedup keys.
pub(crate) fn exe_key(exe: Option<&str>) -> &str {
    exe.unwrap_or("?")
}

/// A login event's facts and its address's enrichment, unless the address is in a trusted
/// network (logins from there never alert).
pub(crate) fn untrusted_login(event: &EventRecord) -> Option<(&LoginInfo, &EnrichmentInfo)> {
    let login = event.login.as_ref()?;
    let enrichment = event.enrichment.as_ref()?;
    (!enrichment.trusted).then_some((login, enrichment))
}

/// The user for titles and dedup keys: the name, else the uid.
pub(crate) fn user_key(login: &LoginInfo) -> String {
    login.user.clone().unwrap_or_else(|| login.uid.to_string())
}

/// The subject a process-only exception is matched against.
pub(crate) fn process_subject(event: &EventRecord) -> Subject<'_> {
    Subject {
        exe: event.process.exe.as_deref(),
        argv: &event.process.argv,
        ancestry: &event.ancestry,
        destination: None,
        port: None,
    }
}

/// The section of a rule whose struct is `{ settings }`: only the common keys, exceptions of
/// the given kinds.
macro_rules! common_section {
    ($rule:ty, port: $port:expr, destination: $destination:expr) => {
        impl $crate::rules::Section for $rule {
            type Input = $crate::validate::CommonInput;

            fn validate(
                input: Self::Input,
                base: Option<&Self>,
                key: &str,
                src: &$crate::validate::Source<'_>,
            ) -> Result<Self, $crate::validate::PolicyError> {
                Ok(Self {
                    settings: input.validate(
                        base.map(|b| &b.settings),
                        key,
                        $crate::validate::ExceptionKinds {
                            port: $port,
                            destination: $destination,
                        },
                        src,
                    )?,
                })
            }

            fn to_input(&self) -> Self::Input {
                $crate::validate::CommonInput::of(&self.settings)
            }
        }
    };
}
pub(crate) use common_section;

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
    ssh_login_tor: ssh_login_tor::SshLoginTor,
    ssh_login_malicious_ip: ssh_login_malicious::SshLoginMaliciousIp,
    ssh_login_listed: ssh_login_listed::SshLoginListed,
    egress_listed_ip: egress_listed::EgressListedIp,
    inbound_tor: inbound_tor::InboundTor,
}
