//! The policy file's top-level shape: the shared keys and the `[rules]` table, whose sections
//! the rules declare themselves ([`crate::rules::RulesInput`]).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{enrich::lists, login, rules::RulesInput};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_window: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_servers: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shells: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell_lists: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_tools: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaders: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_server_users: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub logins: login::ConfigInput,
    #[serde(default)]
    pub enrichment: lists::ConfigInput,
    #[serde(default)]
    pub rules: RulesInput,
}
