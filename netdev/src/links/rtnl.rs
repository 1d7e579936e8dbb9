//! A blocking rtnetlink connection: `rtnetlink`'s handle driven by a runtime of its own, one
//! thread, so that the callers (plain threads that joined a namespace) need not be async.
//! The socket belongs to the network namespace of the thread that made it, wherever it is
//! used afterwards.

use futures_util::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};

use super::LinkError;

pub struct Rtnl {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

fn netlink(what: String) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    move |source| LinkError::Netlink { what, source }
}

impl Rtnl {
    /// A connection in the calling thread's network namespace.
    pub fn new() -> Result<Rtnl, LinkError> {
        let io = |source| LinkError::Io {
            what: "cannot open an rtnetlink socket".into(),
            source,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(io)?;
        let handle = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            Ok(handle)
        });
        Ok(Rtnl {
            handle: handle.map_err(io)?,
            rt,
        })
    }

    /// Every link of the namespace.
    pub fn links(&self) -> Result<Vec<LinkMessage>, LinkError> {
        self.rt
            .block_on(self.handle.link().get().execute().try_collect())
            .map_err(netlink("cannot list the links".into()))
    }

    /// The index of the link called `name`, if there is one.
    pub fn index_of(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let found: Result<Vec<LinkMessage>, _> = self.rt.block_on(
            self.handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute()
                .try_collect(),
        );
        match found {
            Ok(v) => Ok(v.first().map(|m| m.header.index)),
            Err(e) if no_device(&e) => Ok(None),
            Err(e) => Err(netlink(format!("cannot look up link {name}"))(e)),
        }
    }

    /// RTM_NEWLINK (create, exclusive).
    pub fn add(&self, what: String, msg: LinkMessage) -> Result<(), LinkError> {
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(netlink(what))
    }

    /// RTM_SETLINK.
    pub fn set(&self, what: String, msg: LinkMessage) -> Result<(), LinkError> {
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(netlink(what))
    }

    /// Deletes the link called `name`; one that is gone already is no error.
    pub fn delete(&self, name: &str) -> Result<(), LinkError> {
        let Some(index) = self.index_of(name)? else {
            return Ok(());
        };
        match self.rt.block_on(self.handle.link().del(index).execute()) {
            Err(e) if !no_device(&e) => Err(netlink(format!("cannot delete link {name}"))(e)),
            _ => Ok(()),
        }
    }
}

/// ENODEV: no such link (it went away meanwhile).
fn no_device(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -(nix::errno::Errno::ENODEV as i32))
}

/// The link's name, if the kernel gave one.
pub fn name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}
