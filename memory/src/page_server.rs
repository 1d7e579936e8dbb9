//! CRIU's page-server protocol, both ends: a dump sends its pagemaps and pages over TCP, the
//! page server writes them as `pagemap-*.img` and `pages-*.img` into its own images dir, as a
//! local dump would have written them.
//!
//! The wire format is CRIU's: every command is a fixed 32-byte header (native byte order, as
//! C lays out `{u32 cmd; u64 nr_pages; u64 vaddr; u64 dst_id}`), pages follow an add whose
//! flags say present. `dst_id` is the image's id shifted by 8 bits over its type (1: a task's
//! pagemap, 2: a shared memory object's). Opening an image (`OPEN2`) is answered with one byte,
//! whether the page server's dir has that image in its parent dump; `PARENT` asks the same
//! and gets a 4-byte answer; `CLOSE` gets a 4-byte status once everything is written.

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use criu_proto::images::{PagemapEntry, PagemapHead};
use criu_proto::{ImageKind, ImageWriter};

use crate::tls::{Conn, TlsOptions};
use crate::vma::{PAGE_SIZE, PE_PARENT, PE_PRESENT};

pub const PS_IOV_ADD: u32 = 1;
pub const PS_IOV_HOLE: u32 = 2;
pub const PS_IOV_OPEN: u32 = 3;
pub const PS_IOV_OPEN2: u32 = 4;
pub const PS_IOV_PARENT: u32 = 5;
pub const PS_IOV_ADD_F: u32 = 6;
pub const PS_IOV_GET: u32 = 7;
pub const PS_IOV_CLOSE: u32 = 0x1023;
pub const PS_IOV_FORCE_CLOSE: u32 = 0x1024;

const CMD_BITS: u32 = 16;
const TYPE_BITS: u32 = 8;

/// The header's size on the wire.
pub const HEADER: usize = 32;

/// Page images the page server makes are numbered from here, so that they never meet the
/// ones a dump writes into the same dir itself (CRIU's choice too).
pub const SERVER_PAGES_BASE: u32 = 0x10001;

/// Which pagemap a `dst_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `pagemap-ID.img` of a task.
    Task(u64),
    /// `pagemap-shmem-ID.img` of a shared memory object.
    Shmem(u64),
}

impl Target {
    pub fn encode(self) -> u64 {
        match self {
            Target::Task(id) => (id << TYPE_BITS) | 1,
            Target::Shmem(id) => (id << TYPE_BITS) | 2,
        }
    }

    /// Also takes the type numbers older CRIUs sent (their image enum's values).
    pub fn decode(dst_id: u64) -> Option<Target> {
        let id = dst_id >> TYPE_BITS;
        match dst_id & ((1 << TYPE_BITS) - 1) {
            1 | 10 | 11 | 16 | 17 => Some(Target::Task(id)),
            2 | 27 | 28 | 29 | 32 | 33 | 34 => Some(Target::Shmem(id)),
            _ => None,
        }
    }

    fn kind(self) -> (&'static ImageKind, u64) {
        match self {
            Target::Task(id) => (&ImageKind::PAGEMAP, id),
            Target::Shmem(id) => (&ImageKind::SHMEM_PAGEMAP, id),
        }
    }

    pub fn file_name(self) -> String {
        let (kind, id) = self.kind();
        kind.file_name(Some(id))
    }
}

/// One command header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Iov {
    pub cmd: u32,
    pub nr_pages: u64,
    pub vaddr: u64,
    pub dst_id: u64,
}

impl Iov {
    pub fn to_bytes(self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[0..4].copy_from_slice(&self.cmd.to_ne_bytes());
        b[8..16].copy_from_slice(&self.nr_pages.to_ne_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_ne_bytes());
        b[24..32].copy_from_slice(&self.dst_id.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; HEADER]) -> Iov {
        let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Iov {
            cmd: u32::from_ne_bytes(b[0..4].try_into().unwrap_or([0; 4])),
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }

    /// The command without its flags.
    pub fn command(self) -> u32 {
        self.cmd & ((1 << CMD_BITS) - 1)
    }

    /// The pagemap flags an `ADD_F` carries.
    pub fn flags(self) -> u32 {
        self.cmd >> CMD_BITS
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PageServerError {
    #[error("page server {addr}: {what}: {source}")]
    Io {
        addr: String,
        what: String,
        source: std::io::Error,
    },
    #[error("page server {addr}: {what}")]
    Protocol { addr: String, what: String },
    #[error("page server: {0}")]
    Image(#[from] criu_proto::Error),
}

/// The dump's end: one connection for a whole dump, images opened one after the other.
pub struct Client {
    addr: String,
    out: BufWriter<Box<dyn Conn>>,
    /// `--ps-socket`: the socket may outlive us, so the server is told to stop (FORCE_CLOSE).
    inherited: bool,
    /// Pages sent, for the log.
    pub pages_sent: u64,
}

impl Client {
    /// Connects to `address:port` (a name or an IPv4/IPv6 address), trying each address the
    /// name has; with `tls`, over TLS.
    pub fn connect(
        address: &str,
        port: u16,
        tls: Option<&TlsOptions>,
    ) -> Result<Client, PageServerError> {
        let shown = if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        };
        let io = |what: &str| {
            let addr = shown.clone();
            let what = what.to_string();
            move |source| PageServerError::Io { addr, what, source }
        };
        let addrs: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&(address, port))
                .map_err(io("cannot resolve the address"))?
                .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for a in &addrs {
            tracing::info!("Connecting to page server {a}");
            match TcpStream::connect_timeout(a, std::time::Duration::from_secs(10)) {
                Ok(s) => return Client::over(s, shown, false, tls.map(|t| (t, address))),
                Err(e) => {
                    tracing::info!("Can't connect to page server {a}: {e}");
                    last = e;
                }
            }
        }
        Err(io("cannot connect")(last))
    }

    /// Uses a socket already connected (`--ps-socket FD`); `tls`: TLS over it, the server
    /// named as given.
    pub fn over(
        stream: TcpStream,
        addr: String,
        inherited: bool,
        tls: Option<(&TlsOptions, &str)>,
    ) -> Result<Client, PageServerError> {
        // Headers that wait for an answer must go at once.
        let _ = stream.set_nodelay(true);
        let conn: Box<dyn Conn> = match tls {
            Some((t, host)) => t
                .client(stream, host)
                .map_err(|e| PageServerError::Protocol {
                    addr: addr.clone(),
                    what: e.to_string(),
                })?,
            None => Box::new(stream),
        };
        // Over TLS every command and every run of pages is written on its own, so that TLS
        // records end where they do: CRIU's page server reads pages record by record and
        // counts on that.
        let buffer = if tls.is_some() { 0 } else { 256 << 10 };
        let mut client = Client {
            addr,
            out: BufWriter::with_capacity(buffer, conn),
            inherited,
            pages_sent: 0,
        };
        if tls.is_some() {
            // With TLS 1.3 the server checks our certificate after our side of the handshake
            // is over: one harmless round trip makes a refusal fail here, before any task is
            // touched.
            client
                .has_parent(Target::Task(0))
                .map_err(|e| PageServerError::Protocol {
                    addr: client.addr.clone(),
                    what: format!("TLS: the page server refused this criu's certificate ({e})"),
                })?;
        }
        Ok(client)
    }

    pub fn address(&self) -> &str {
        &self.addr
    }

    fn io(&self, what: &str) -> impl FnOnce(std::io::Error) -> PageServerError {
        let addr = self.addr.clone();
        let what = what.to_string();
        move |source| PageServerError::Io { addr, what, source }
    }

    fn send(&mut self, iov: Iov) -> Result<(), PageServerError> {
        let b = iov.to_bytes();
        self.out
            .write_all(&b)
            .map_err(self.io("cannot send a command (the page server went away?)"))
    }

    fn answer<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PageServerError> {
        self.out
            .flush()
            .map_err(self.io("cannot send (the page server went away?)"))?;
        let mut b = [0u8; N];
        self.out
            .get_mut()
            .read_exact(&mut b)
            .map_err(self.io(&format!("no answer to {what}")))?;
        Ok(b)
    }

    /// Opens the pagemap `target` on the server; answers whether the server's dir has it in
    /// its parent dump.
    pub fn open(&mut self, target: Target) -> Result<bool, PageServerError> {
        self.send(Iov {
            cmd: PS_IOV_OPEN2,
            dst_id: target.encode(),
            ..Default::default()
        })?;
        let [has_parent] = self.answer::<1>(&format!("opening {}", target.file_name()))?;
        Ok(has_parent != 0)
    }

    /// Whether the server's parent dump has `target` (CRIU's PS_IOV_PARENT).
    pub fn has_parent(&mut self, target: Target) -> Result<bool, PageServerError> {
        self.send(Iov {
            cmd: PS_IOV_PARENT,
            dst_id: target.encode(),
            ..Default::default()
        })?;
        let b = self.answer::<4>("the parent check")?;
        Ok(i32::from_ne_bytes(b) > 0)
    }

    /// One pagemap entry of the image opened last; a present one must be followed by its
    /// pages ([`Client::pages`]).
    pub fn add(
        &mut self,
        target: Target,
        vaddr: u64,
        nr_pages: u64,
        flags: u32,
    ) -> Result<(), PageServerError> {
        self.send(Iov {
            cmd: (flags << CMD_BITS) | PS_IOV_ADD_F,
            nr_pages,
            vaddr,
            dst_id: target.encode(),
        })
    }

    /// Bytes of the pages announced by the last present entry.
    pub fn pages(&mut self, bytes: &[u8]) -> Result<(), PageServerError> {
        self.pages_sent += bytes.len() as u64 / PAGE_SIZE;
        self.out
            .write_all(bytes)
            .map_err(self.io("cannot send pages (the page server went away?)"))
    }

    /// Ends the session: the server answers once every image is written.
    pub fn close(&mut self) -> Result<(), PageServerError> {
        let cmd = if self.inherited {
            PS_IOV_FORCE_CLOSE
        } else {
            PS_IOV_CLOSE
        };
        self.send(Iov {
            cmd,
            ..Default::default()
        })?;
        let status = i32::from_ne_bytes(self.answer::<4>("the final close")?);
        // The server waits for the hang-up (as CRIU's, to keep TIME_WAIT on our side).
        if !self.inherited {
            self.out.get_mut().hang_up();
        }
        if status != 0 {
            return Err(PageServerError::Protocol {
                addr: self.addr.clone(),
                what: format!("the page server ended with status {status}"),
            });
        }
        tracing::info!(
            "Disconnected from page server {} ({} pages sent)",
            self.addr,
            self.pages_sent
        );
        Ok(())
    }
}

/// The image being written on the server's side.
struct Open {
    dst_id: u64,
    target: Target,
    pagemap: ImageWriter<BufWriter<std::fs::File>>,
    pages: BufWriter<std::fs::File>,
    pages_name: String,
    /// What the parent's pagemap covers, when the dir has a parent with this image.
    parent: Option<crate::track::Ranges>,
}

/// What a session wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Served {
    /// Images written, by name.
    pub images: Vec<String>,
    pub pages: u64,
    pub parent_entries: u64,
}

/// The page server's end: writes what one dump sends into `dir`.
pub struct Server {
    dir: PathBuf,
    peer: String,
    next_pages_id: u32,
    open: Option<Open>,
    served: Served,
}

impl Server {
    pub fn new(dir: &Path, peer: String) -> Server {
        Server {
            dir: dir.to_path_buf(),
            peer,
            next_pages_id: SERVER_PAGES_BASE,
            open: None,
            served: Served::default(),
        }
    }

    fn protocol(&self, what: String) -> PageServerError {
        PageServerError::Protocol {
            addr: format!("client {}", self.peer),
            what,
        }
    }

    fn io(&self, what: String) -> impl FnOnce(std::io::Error) -> PageServerError {
        let addr = format!("client {}", self.peer);
        move |source| PageServerError::Io { addr, what, source }
    }

    /// Whether the dir's parent dump has `target`'s pagemap.
    fn parent_has(&self, target: Target) -> bool {
        self.dir
            .join(crate::chain::PARENT_LINK)
            .join(target.file_name())
            .exists()
    }

    fn finish_open(&mut self) -> Result<(), PageServerError> {
        if let Some(o) = self.open.take() {
            o.pagemap.finish()?;
            let f = o
                .pages
                .into_inner()
                .map_err(|e| e.into_error())
                .map_err(self.io(format!("cannot write {}", o.pages_name)))?;
            drop(f);
            let _ = o.dst_id;
        }
        Ok(())
    }

    fn open(&mut self, dst_id: u64) -> Result<bool, PageServerError> {
        let target = Target::decode(dst_id)
            .ok_or_else(|| self.protocol(format!("unknown pagemap type in {dst_id:#x}")))?;
        self.finish_open()?;
        let (kind, id) = target.kind();
        tracing::info!("Opening {}", target.file_name());
        let pages_id = self.next_pages_id;
        self.next_pages_id += 1;
        let mut pagemap = ImageWriter::create(&self.dir, kind, Some(id))?;
        pagemap.write(&PagemapHead { pages_id })?;
        let pages_name = ImageKind::PAGES.file_name(Some(u64::from(pages_id)));
        let pages_path = self.dir.join(&pages_name);
        let pages = criu_proto::create_image_file(&pages_path)
            .map_err(self.io(format!("cannot create {}", pages_path.display())))?;
        let parent = if self.parent_has(target) {
            let pdir = self.dir.join(crate::chain::PARENT_LINK);
            match target {
                Target::Task(id) => crate::chain::covered(&pdir, id)
                    .map_err(|e| self.protocol(format!("parent {}: {e}", target.file_name())))?,
                // Shared memory is not checked against its parent.
                Target::Shmem(_) => None,
            }
        } else {
            None
        };
        let has_parent = self.parent_has(target);
        self.served.images.push(target.file_name());
        self.served.images.push(pages_name.clone());
        self.open = Some(Open {
            dst_id,
            target,
            pagemap,
            pages: BufWriter::with_capacity(1 << 20, pages),
            pages_name,
            parent,
        });
        Ok(has_parent)
    }

    fn add<R: Read>(
        &mut self,
        sock: &mut R,
        iov: Iov,
        flags: u32,
        buf: &mut [u8],
    ) -> Result<(), PageServerError> {
        if self.open.as_ref().map(|o| o.dst_id) != Some(iov.dst_id) {
            tracing::warn!("Deprecated IO w/o open");
            self.open(iov.dst_id)?;
        }
        let peer = format!("client {}", self.peer);
        let o = self
            .open
            .as_mut()
            .ok_or_else(|| PageServerError::Protocol {
                addr: peer.clone(),
                what: "no image open".into(),
            })?;
        tracing::debug!(
            "Adding {:#x} - {:#x}",
            iov.vaddr,
            iov.vaddr + iov.nr_pages * PAGE_SIZE
        );
        if flags & PE_PARENT != 0 {
            if let Some(p) = &o.parent {
                let end = iov.vaddr + iov.nr_pages * PAGE_SIZE;
                let inside: u64 = p.clip(iov.vaddr, end).map(|(s, e)| e - s).sum();
                if inside != end - iov.vaddr {
                    return Err(PageServerError::Protocol {
                        addr: peer,
                        what: format!(
                            "{}: hole {:#x} - {end:#x} not found in the parent",
                            o.target.file_name(),
                            iov.vaddr
                        ),
                    });
                }
            }
            self.served.parent_entries += 1;
        }
        o.pagemap.write(&PagemapEntry {
            vaddr: iov.vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(flags),
            nr_pages: Some(iov.nr_pages),
        })?;
        if flags & PE_PRESENT == 0 {
            return Ok(());
        }
        let mut left = iov.nr_pages * PAGE_SIZE;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            sock.read_exact(&mut buf[..n])
                .map_err(|source| PageServerError::Io {
                    addr: peer.clone(),
                    what: format!(
                        "the connection ended within the pages of {}",
                        o.target.file_name()
                    ),
                    source,
                })?;
            o.pages
                .write_all(&buf[..n])
                .map_err(|source| PageServerError::Io {
                    addr: peer.clone(),
                    what: format!("cannot write {}", o.pages_name),
                    source,
                })?;
            left -= n as u64;
        }
        self.served.pages += iov.nr_pages;
        Ok(())
    }

    /// Serves one dump on `sock` until it closes the session. `wait_eof`: then wait until
    /// the client hangs up (not for an inherited socket its owner keeps).
    pub fn serve(mut self, conn: &mut dyn Conn, wait_eof: bool) -> Result<Served, PageServerError> {
        let mut buf = vec![0u8; 1 << 20];
        // Answers go out through the reader's connection (one stream for TLS).
        let mut reader = std::io::BufReader::with_capacity(1 << 20, conn);
        loop {
            let mut h = [0u8; HEADER];
            match read_header(&mut reader, &mut h) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(self.protocol(
                        "the connection was closed before the data were flushed (the dump failed?)"
                            .into(),
                    ))
                }
                Err(e) => return Err(self.io("cannot read a command".into())(e)),
            }
            let iov = Iov::from_bytes(&h);
            match iov.command() {
                PS_IOV_OPEN => {
                    self.open(iov.dst_id)?;
                }
                PS_IOV_OPEN2 => {
                    let has_parent = self.open(iov.dst_id)?;
                    reader
                        .get_mut()
                        .write_all(&[u8::from(has_parent)])
                        .map_err(self.io("cannot answer an open".into()))?;
                }
                PS_IOV_PARENT => {
                    let target = Target::decode(iov.dst_id).ok_or_else(|| {
                        self.protocol(format!("unknown pagemap type in {:#x}", iov.dst_id))
                    })?;
                    let has = i32::from(self.parent_has(target));
                    reader
                        .get_mut()
                        .write_all(&has.to_ne_bytes())
                        .map_err(self.io("cannot answer the parent check".into()))?;
                }
                PS_IOV_ADD_F | PS_IOV_ADD | PS_IOV_HOLE => {
                    let flags = match iov.command() {
                        PS_IOV_ADD_F => iov.flags(),
                        PS_IOV_ADD => PE_PRESENT,
                        _ => PE_PARENT,
                    };
                    self.add(&mut reader, iov, flags, &mut buf)?;
                }
                PS_IOV_CLOSE | PS_IOV_FORCE_CLOSE => {
                    self.finish_open()?;
                    reader
                        .get_mut()
                        .write_all(&0i32.to_ne_bytes())
                        .map_err(self.io("cannot send the final answer".into()))?;
                    if wait_eof && iov.command() == PS_IOV_CLOSE {
                        let mut c = [0u8; 1];
                        match reader.read(&mut c) {
                            Ok(0) => {}
                            Ok(_) => {
                                return Err(self.protocol("unexpected data after the close".into()))
                            }
                            Err(e) => {
                                return Err(self.io("waiting for the client to hang up".into())(e))
                            }
                        }
                    }
                    tracing::info!("Session over");
                    return Ok(self.served);
                }
                PS_IOV_GET => {
                    return Err(self
                        .protocol("PS_IOV_GET: lazy pages are not supported by this criu".into()))
                }
                other => return Err(self.protocol(format!("unknown command {other:#x}"))),
            }
        }
    }
}

/// Reads one header; `false` on a clean end of the stream before it.
fn read_header<R: Read>(r: &mut R, h: &mut [u8; HEADER]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A page server on a free loopback port serving one session into `dir` (for tests here and
/// in dump_shmem.rs).
#[cfg(test)]
pub(crate) fn serve_one(
    dir: &Path,
) -> (
    u16,
    std::thread::JoinHandle<Result<Served, PageServerError>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let d = dir.to_path_buf();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let _ = s.set_nodelay(true);
        Server::new(&d, peer.to_string()).serve(&mut s, true)
    });
    (port, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_laid_out_as_criu_s_struct() {
        let iov = Iov {
            cmd: (PE_PRESENT << CMD_BITS) | PS_IOV_ADD_F,
            nr_pages: 3,
            vaddr: 0x7f00_0000_1000,
            dst_id: Target::Task(42).encode(),
        };
        let b = iov.to_bytes();
        assert_eq!(&b[4..8], &[0; 4], "padding after cmd");
        assert_eq!(
            u64::from_ne_bytes(b[24..32].try_into().unwrap()),
            (42 << 8) | 1
        );
        let back = Iov::from_bytes(&b);
        assert_eq!(back, iov);
        assert_eq!(back.command(), PS_IOV_ADD_F);
        assert_eq!(back.flags(), PE_PRESENT);
    }

    #[test]
    fn dst_ids_decode_old_type_numbers() {
        assert_eq!(Target::decode((7 << 8) | 11), Some(Target::Task(7)));
        assert_eq!(Target::decode((9 << 8) | 2), Some(Target::Shmem(9)));
        assert_eq!(Target::decode((9 << 8) | 3), None);
        assert_eq!(Target::Shmem(5).file_name(), "pagemap-shmem-5.img");
    }

    #[test]
    fn a_session_writes_the_images_a_local_dump_would() {
        let dir = tempfile::tempdir().unwrap();
        let (port, server) = serve_one(dir.path());
        let mut c = Client::connect("127.0.0.1", port, None).unwrap();
        let t = Target::Task(7);
        assert!(!c.open(t).unwrap());
        c.add(t, 0x1000, 2, PE_PRESENT).unwrap();
        c.pages(&vec![0xab; 2 * PAGE_SIZE as usize]).unwrap();
        c.add(t, 0x5000, 1, PE_PARENT).unwrap();
        assert!(!c.has_parent(t).unwrap());
        c.close().unwrap();
        let served = server.join().unwrap().unwrap();
        assert_eq!(served.pages, 2);
        let covered = crate::chain::covered(dir.path(), 7).unwrap().unwrap();
        assert!(covered.contains(0x1000) && covered.contains(0x2000) && covered.contains(0x5000));
        assert!(!covered.contains(0x3000));
        let pages = crate::fill::read_pages_image(dir.path(), SERVER_PAGES_BASE).unwrap();
        assert_eq!(pages.len(), 2 * PAGE_SIZE as usize);
        assert!(pages.iter().all(|&b| b == 0xab));
    }

    #[test]
    fn a_dump_that_goes_away_fails_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let (port, server) = serve_one(dir.path());
        let mut c = Client::connect("127.0.0.1", port, None).unwrap();
        c.open(Target::Task(1)).unwrap();
        c.add(Target::Task(1), 0x1000, 4, PE_PRESENT).unwrap();
        c.pages(&[0; 4096]).unwrap();
        drop(c);
        let e = server.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("within the pages"), "{e}");
    }
}
