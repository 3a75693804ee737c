//! What a rule reads: an event record and what the enrich stage knows about it, computed on
//! first use and at most once per event, however many rules ask.

use std::cell::OnceCell;

use super::lineage::{self, Shell, WebServer};
use crate::{matcher::ExeGlob, record::EventRecord};

/// The policy's program lists the context is judged by.
#[derive(Clone, Copy, Debug)]
pub struct Programs<'p> {
    pub web_servers: &'p [ExeGlob],
    pub shells: &'p [ExeGlob],
}

/// One event, as the rules see it.
#[derive(Debug)]
pub struct Context<'e> {
    pub event: &'e EventRecord,
    programs: Programs<'e>,
    web_server: OnceCell<Option<WebServer<'e>>>,
    web_server_above: OnceCell<Option<WebServer<'e>>>,
    shell: OnceCell<Option<Shell<'e>>>,
}

impl<'e> Context<'e> {
    pub fn new(event: &'e EventRecord, programs: Programs<'e>) -> Self {
        Self {
            event,
            programs,
            web_server: OnceCell::new(),
            web_server_above: OnceCell::new(),
            shell: OnceCell::new(),
        }
    }

    /// The nearest web server the process is or descends from (at any depth, or running in
    /// place of one after an exec).
    pub fn web_server(&self) -> Option<WebServer<'e>> {
        *self
            .web_server
            .get_or_init(|| lineage::web_server(self.programs.web_servers, self.event, true))
    }

    /// The nearest web server above the program the process runs now: a program it replaced by
    /// exec, or an ancestor (an exec of a shell is judged by who started it, not by the shell).
    pub fn web_server_above(&self) -> Option<WebServer<'e>> {
        *self
            .web_server_above
            .get_or_init(|| lineage::web_server(self.programs.web_servers, self.event, false))
    }

    /// The shell the process runs, if it is one.
    pub fn shell(&self) -> Option<Shell<'e>> {
        *self.shell.get_or_init(|| {
            lineage::shell(
                self.programs.shells,
                &self.event.process,
                self.event.filename.as_deref(),
            )
        })
    }
}
