//! Reading and writing CRIU's framing: head magic(s), then entries of a u32 little-endian
//! length and that many bytes of protobuf message, each possibly followed by raw payload.

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::Path;

use prost::{Message, Name};

use crate::{check_required, message_descriptor, Error, ImageKind, Result};

/// No CRIU entry comes near this; a larger length means a corrupt image.
pub const MAX_ENTRY_SIZE: u32 = 64 << 20;

/// Reads one image: checks its magic on open, then yields entries.
pub struct ImageReader<R> {
    path: String,
    kind: ImageKind,
    input: R,
    offset: u64,
}

impl ImageReader<BufReader<File>> {
    /// Opens `dir/<kind file name>` and checks its magic.
    pub fn open(dir: &Path, kind: &ImageKind, id: Option<u64>) -> Result<Self> {
        let path = dir.join(kind.file_name(id));
        let shown = path.display().to_string();
        let file = File::open(&path).map_err(|e| Error::io(&shown, e))?;
        Self::new(shown, kind, BufReader::new(file))
    }

    /// Like `open`, but a missing file gives `Ok(None)` (CRIU treats many images as optional).
    pub fn open_if_exists(dir: &Path, kind: &ImageKind, id: Option<u64>) -> Result<Option<Self>> {
        match Self::open(dir, kind, id) {
            Ok(reader) => Ok(Some(reader)),
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<R: Read> ImageReader<R> {
    /// Wraps any reader; `path` is only used in error messages. Checks the head magic(s).
    pub fn new(path: impl Into<String>, kind: &ImageKind, input: R) -> Result<Self> {
        let mut reader = ImageReader {
            path: path.into(),
            kind: *kind,
            input,
            offset: 0,
        };
        for expected in kind.head() {
            let at = reader.offset;
            let found = reader.read_u32()?.ok_or_else(|| {
                Error::format(&reader.path, at, "empty file, expected a magic number")
            })?;
            if found != expected {
                return Err(Error::format(
                    &reader.path,
                    at,
                    format!(
                        "bad magic {found:#010x}, expected {expected:#010x} ({})",
                        kind.name
                    ),
                ));
            }
        }
        Ok(reader)
    }

    /// Wraps a reader whose head magic(s) were already consumed at `offset`.
    pub fn after_head(path: impl Into<String>, kind: &ImageKind, input: R, offset: u64) -> Self {
        ImageReader {
            path: path.into(),
            kind: *kind,
            input,
            offset,
        }
    }

    /// The file name used in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The image kind.
    pub fn kind(&self) -> &ImageKind {
        &self.kind
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry, decoded as `M` with its required fields checked; `None` at end of file.
    pub fn read<M: Message + Default + Name>(&mut self) -> Result<Option<M>> {
        let Some((at, bytes)) = self.read_entry_bytes()? else {
            return Ok(None);
        };
        decode_checked::<M>(&self.path, at, &bytes).map(Some)
    }

    /// Every remaining entry, decoded as `M`.
    pub fn read_all<M: Message + Default + Name>(&mut self) -> Result<Vec<M>> {
        let mut all = Vec::new();
        while let Some(entry) = self.read()? {
            all.push(entry);
        }
        Ok(all)
    }

    /// The next entry's raw message bytes and the offset of its length word; `None` at a
    /// clean end of file.
    pub fn read_entry_bytes(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let at = self.offset;
        let Some(len) = self.read_u32()? else {
            return Ok(None);
        };
        if len > MAX_ENTRY_SIZE {
            return Err(Error::format(
                &self.path,
                at,
                format!("entry length {len} is over the {MAX_ENTRY_SIZE} byte limit"),
            ));
        }
        let bytes = self.read_exact_vec(len as usize, "entry")?;
        Ok(Some((at, bytes)))
    }

    /// `len` bytes of raw payload that follow an entry.
    pub fn read_payload(&mut self, len: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(len).map_err(|_| {
            Error::format(&self.path, self.offset, format!("payload of {len} bytes"))
        })?;
        self.read_exact_vec(len, "payload")
    }

    /// Everything left in the file.
    pub fn read_to_end(&mut self) -> Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.input
            .read_to_end(&mut rest)
            .map_err(|e| Error::io(&self.path, e))?;
        self.offset += rest.len() as u64;
        Ok(rest)
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.input
    }

    fn read_u32(&mut self) -> Result<Option<u32>> {
        let mut word = [0u8; 4];
        let got = read_fully(&mut self.input, &mut word).map_err(|e| Error::io(&self.path, e))?;
        match got {
            0 => Ok(None),
            4 => {
                self.offset += 4;
                Ok(Some(u32::from_le_bytes(word)))
            }
            n => Err(Error::format(
                &self.path,
                self.offset,
                format!("truncated: {n} bytes where a 4-byte length or magic was expected"),
            )),
        }
    }

    fn read_exact_vec(&mut self, len: usize, what: &str) -> Result<Vec<u8>> {
        // Read in steps so a huge bogus length cannot make us allocate before EOF shows.
        let mut buf = Vec::with_capacity(len.min(1 << 20));
        let got = (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&self.path, e))?;
        if got < len {
            return Err(Error::format(
                &self.path,
                self.offset,
                format!("truncated: {what} of {len} bytes, only {got} left in the file"),
            ));
        }
        self.offset += len as u64;
        Ok(buf)
    }
}

/// Decodes one entry as `M` and checks proto2 required fields.
pub(crate) fn decode_checked<M: Message + Default + Name>(
    path: &str,
    at: u64,
    bytes: &[u8],
) -> Result<M> {
    let name = M::full_name();
    let descriptor = message_descriptor(&name)?;
    if let Err(field) = check_required(&descriptor, bytes) {
        return Err(Error::MissingRequired {
            path: path.to_string(),
            offset: at,
            message: name,
            field,
        });
    }
    M::decode(bytes).map_err(|source| Error::Decode {
        path: path.to_string(),
        offset: at,
        message: name,
        source,
    })
}

fn read_fully(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes one image: the head magic(s) on creation, then entries.
pub struct ImageWriter<W: Write> {
    path: String,
    output: W,
}

impl ImageWriter<BufWriter<File>> {
    /// Creates (truncates) `dir/<kind file name>` and writes its magic.
    pub fn create(dir: &Path, kind: &ImageKind, id: Option<u64>) -> Result<Self> {
        let path = dir.join(kind.file_name(id));
        let shown = path.display().to_string();
        let file = create_image_file(&path).map_err(|e| Error::io(&shown, e))?;
        Self::new(shown, kind, BufWriter::new(file))
    }
}

/// Creates (truncating) an image file readable by its owner only: pages and images hold the
/// program's secrets.
pub fn create_image_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

impl<W: Write> ImageWriter<W> {
    /// Wraps any writer and writes the head magic(s); `path` is only used in errors.
    pub fn new(path: impl Into<String>, kind: &ImageKind, output: W) -> Result<Self> {
        let mut writer = ImageWriter {
            path: path.into(),
            output,
        };
        for magic in kind.head() {
            writer.write_payload(&magic.to_le_bytes())?;
        }
        Ok(writer)
    }

    /// Writes one framed entry.
    pub fn write<M: Message>(&mut self, msg: &M) -> Result<()> {
        self.write_entry_bytes(&msg.encode_to_vec())
    }

    /// Writes one framed entry from already encoded bytes.
    pub fn write_entry_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|len| *len <= MAX_ENTRY_SIZE)
            .ok_or_else(|| {
                Error::format(
                    &self.path,
                    0,
                    format!("entry of {} bytes is too big", bytes.len()),
                )
            })?;
        self.write_payload(&len.to_le_bytes())?;
        self.write_payload(bytes)
    }

    /// Writes raw bytes (the payload that follows some entries).
    pub fn write_payload(&mut self, bytes: &[u8]) -> Result<()> {
        self.output
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes and gives back the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        self.output.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.output)
    }
}
