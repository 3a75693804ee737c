//! What a rule reads: an event record and what the enrich stage knows about it, computed on
//! first use and at most once per event, however many rules ask.

use std::cell::OnceCell;

use super::lineage::{self, Shell, WebServer};
use crate::{
    matcher::ExeGlob,
    record::{EventRecord, ToolInfo},
};

/// The policy's program lists the context is judged by.
#[derive(Clone, Copy, Debug)]
pub struct Programs<'p> {
    pub web_servers: &'p [ExeGlob],
    pub shells: &'p [ExeGlob],
    pub egress_tools: &'p [ExeGlob],
    pub loaders: &'p [ExeGlob],
    pub web_server_users: &'p [String],
}

/// One event, as the rules see it.
#[derive(Debug)]
pub struct Context<'e> {
    pub event: &'e EventRecord,
    programs: Programs<'e>,
    web_server: OnceCell<Option<WebServer<'e>>>,
    web_server_above: OnceCell<Option<WebServer<'e>>>,
    shell: OnceCell<Option<Shell<'e>>>,
    tool: OnceCell<Option<ToolInfo>>,
}

impl<'e> Context<'e> {
    pub fn new(event: &'e EventRecord, programs: Programs<'e>) -> Self {
        Self {
            event,
            programs,
            web_server: OnceCell::new(),
            web_server_above: OnceCell::new(),
            shell: OnceCell::new(),
            tool: OnceCell::new(),
        }
    }

    /// The nearest web server the process is or descends from (at any depth, or running in
    /// place of one after an exec); with none in the lineage, the process itself when it runs
    /// as a web server's user.
    pub fn web_server(&self) -> Option<WebServer<'e>> {
        *self.web_server.get_or_init(|| {
            lineage::web_server(self.programs.web_servers, self.event, true)
                .or_else(|| lineage::web_server_user(self.programs.web_server_users, self.event))
        })
    }

    /// The nearest web server above the program the process runs now: a program it replaced by
    /// exec, or an ancestor (an exec of a shell is judged by who started it, not by the shell);
    /// with none in the lineage, a web server's user running it.
    pub fn web_server_above(&self) -> Option<WebServer<'e>> {
        *self.web_server_above.get_or_init(|| {
            lineage::web_server(self.programs.web_servers, self.event, false)
                .or_else(|| lineage::web_server_user(self.programs.web_server_users, self.event))
        })
    }

    /// The shell the process runs, if it is one (by path, loader, file or content).
    pub fn shell(&self) -> Option<Shell<'e>> {
        *self
            .shell
            .get_or_init(|| lineage::shell(self.programs.shells, self.programs.loaders, self.event))
    }

    /// The shell or egress tool the process is or descends from, below its web server.
    pub fn tool(&self) -> Option<&ToolInfo> {
        self.tool
            .get_or_init(|| {
                let depth = self.web_server().map(|w| w.depth);
                lineage::tool(
                    self.programs.shells,
                    self.programs.egress_tools,
                    self.programs.loaders,
                    self.event,
                    depth,
                )
            })
            .as_ref()
    }
}
