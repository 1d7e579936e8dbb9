//! A blocking rtnetlink connection: `rtnetlink`'s handle driven by a runtime of its own, one
//! thread, so that the callers (plain threads that joined a namespace) need not be async.
//! The socket belongs to the network namespace of the thread that made it, wherever it is
//! used afterwards. A caller that is itself on a runtime (an actix arbiter) has each request
//! run on a short-lived thread of its own, which starts in the caller's namespace.

use futures_util::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};

use super::LinkError;

pub struct Rtnl {
    /// None only while it is dropped.
    rt: Option<tokio::runtime::Runtime>,
    handle: rtnetlink::Handle,
}

/// Runs `f` here, or on a new thread if this one drives an async runtime already (a runtime
/// cannot block inside another).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn netlink(what: String) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    move |source| LinkError::Netlink { what, source }
}

impl Drop for Rtnl {
    fn drop(&mut self) {
        // Without waiting: the caller may be on a runtime, where a runtime must not block.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Rtnl {
    /// A connection in the calling thread's network namespace.
    pub fn new() -> Result<Rtnl, LinkError> {
        let io = |source| LinkError::Io {
            what: "cannot open an rtnetlink socket".into(),
            source,
        };
        off_runtime(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(io)?;
            let handle = rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection()?;
                tokio::spawn(conn);
                Ok(handle)
            });
            match handle {
                Ok(handle) => Ok(Rtnl {
                    rt: Some(rt),
                    handle,
                }),
                Err(e) => {
                    rt.shutdown_background();
                    Err(io(e))
                }
            }
        })
    }

    /// Runs one request to its end.
    fn run<T: Send>(
        &self,
        f: impl std::future::Future<Output = Result<T, rtnetlink::Error>> + Send,
    ) -> Result<T, rtnetlink::Error> {
        off_runtime(|| match &self.rt {
            Some(rt) => rt.block_on(f),
            None => Err(rtnetlink::Error::RequestFailed),
        })
    }

    /// Every link of the namespace.
    pub fn links(&self) -> Result<Vec<LinkMessage>, LinkError> {
        self.run(self.handle.link().get().execute().try_collect())
            .map_err(netlink("cannot list the links".into()))
    }

    /// The index of the link called `name`, if there is one.
    pub fn index_of(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let get = self.handle.link().get().match_name(name.to_string());
        match self.run(get.execute().try_collect::<Vec<LinkMessage>>()) {
            Ok(v) => Ok(v.first().map(|m| m.header.index)),
            Err(e) if no_device(&e) => Ok(None),
            Err(e) => Err(netlink(format!("cannot look up link {name}"))(e)),
        }
    }

    /// RTM_NEWLINK (create, exclusive).
    pub fn add(&self, what: String, msg: LinkMessage) -> Result<(), LinkError> {
        self.run(self.handle.link().add(msg).execute())
            .map_err(netlink(what))
    }

    /// RTM_SETLINK.
    pub fn set(&self, what: String, msg: LinkMessage) -> Result<(), LinkError> {
        self.run(self.handle.link().set(msg).execute())
            .map_err(netlink(what))
    }

    /// The id this namespace gives the namespace `ns` (RTM_GETNSID), if it gave it one.
    pub fn nsid_of(&self, ns: std::os::fd::BorrowedFd<'_>) -> Result<Option<i32>, LinkError> {
        use netlink_packet_route::RouteNetlinkMessage::GetNsId;
        let what = "cannot ask the id of a network namespace (RTM_GETNSID)".to_string();
        self.nsid_request(GetNsId, ns, None, what)
    }

    /// Gives the namespace `ns` the id `nsid` in this one (RTM_NEWNSID), as the dump found it.
    pub fn set_nsid(&self, ns: std::os::fd::BorrowedFd<'_>, nsid: i32) -> Result<(), LinkError> {
        use netlink_packet_route::RouteNetlinkMessage::NewNsId;
        let what = format!("cannot give a network namespace the id {nsid} (RTM_NEWNSID)");
        self.nsid_request(NewNsId, ns, Some(nsid), what).map(drop)
    }

    /// One nsid request about namespace `ns` (with the id `nsid` to give it); the id the
    /// kernel answers, if any.
    fn nsid_request(
        &self,
        kind: fn(
            netlink_packet_route::nsid::NsidMessage,
        ) -> netlink_packet_route::RouteNetlinkMessage,
        ns: std::os::fd::BorrowedFd<'_>,
        nsid: Option<i32>,
        what: String,
    ) -> Result<Option<i32>, LinkError> {
        use futures_util::StreamExt;
        use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
        use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
        use netlink_packet_route::RouteNetlinkMessage;
        let mut msg = NsidMessage::default();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&ns);
        msg.attributes.push(NsidAttribute::Fd(fd as u32));
        msg.attributes.extend(nsid.map(NsidAttribute::Id));
        let mut req = NetlinkMessage::from(kind(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut answers = self
            .handle
            .clone()
            .request(req)
            .map_err(netlink(what.clone()))?;
        let found = self.run(async move {
            let mut id = None;
            while let Some(answer) = answers.next().await {
                match answer.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(rtnetlink::Error::NetlinkError(e))
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                        id = m.attributes.iter().find_map(|a| match a {
                            NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                            _ => None,
                        });
                    }
                    _ => {}
                }
            }
            Ok(id)
        });
        found.map_err(netlink(what))
    }

    /// Deletes the link called `name`; one that is gone already is no error.
    pub fn delete(&self, name: &str) -> Result<(), LinkError> {
        let Some(index) = self.index_of(name)? else {
            return Ok(());
        };
        match self.run(self.handle.link().del(index).execute()) {
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
