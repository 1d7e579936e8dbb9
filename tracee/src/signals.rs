//! Plain data read from a thread: queued signals and seccomp filters.

/// One queued signal as the kernel copies it (`siginfo_t`, 128 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct SigInfo {
    pub bytes: [u8; 128],
}

impl SigInfo {
    pub fn from_bytes(b: &[u8]) -> SigInfo {
        let mut bytes = [0u8; 128];
        bytes.copy_from_slice(&b[..128]);
        SigInfo { bytes }
    }

    fn i32_at(&self, off: usize) -> i32 {
        i32::from_ne_bytes([
            self.bytes[off],
            self.bytes[off + 1],
            self.bytes[off + 2],
            self.bytes[off + 3],
        ])
    }

    pub fn signo(&self) -> i32 {
        self.i32_at(0)
    }

    pub fn errno(&self) -> i32 {
        self.i32_at(4)
    }

    pub fn code(&self) -> i32 {
        self.i32_at(8)
    }

    /// Sender pid for kill/sigqueue/tkill-style signals.
    pub fn pid(&self) -> i32 {
        self.i32_at(16)
    }

    /// Sender uid for kill/sigqueue/tkill-style signals.
    pub fn uid(&self) -> u32 {
        self.i32_at(20) as u32
    }

    /// The value passed with sigqueue (`si_value`, as an int).
    pub fn value_int(&self) -> i32 {
        self.i32_at(24)
    }
}

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigInfo(signo {}, code {}, pid {})",
            self.signo(),
            self.code(),
            self.pid()
        )
    }
}

/// One seccomp filter: BPF instructions `(code, jt, jf, k)` and its flags (SECCOMP_FILTER_FLAG_*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompFilter {
    pub instructions: Vec<(u16, u8, u8, u32)>,
    pub flags: u64,
}
