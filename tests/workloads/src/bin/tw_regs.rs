//! A thread that holds known values in r8, r9, r12-r15 and in all 16 YMM registers, then loops
//! on pause() forever. Prints "READY TID" once the values are in place. The values are the
//! ones `expected_gp` and `expected_ymm` in tests/tracee_regs.rs compute.

use std::sync::atomic::{AtomicU32, Ordering};

/// r8, r9, r12, r13, r14, r15.
const GP: [u64; 6] = [
    0x0808_0808_0808_0808,
    0x0909_0909_0909_0909,
    0x1212_1212_1212_1212,
    0x1313_1313_1313_1313,
    0x1414_1414_1414_1414,
    0x1515_1515_1515_1515,
];

static READY: AtomicU32 = AtomicU32::new(0);
static TID: AtomicU32 = AtomicU32::new(0);

fn main() {
    // YMMn byte j = n * 32 + j (wrapping): low half and high half differ.
    let ymm: Vec<u8> = (0..16 * 32).map(|i| (i % 256) as u8).collect();
    let ymm: &'static [u8] = Box::leak(ymm.into_boxed_slice());
    std::thread::spawn(move || {
        TID.store(criu_test_workloads::gettid() as u32, Ordering::SeqCst);
        // SAFETY: reads 512 bytes from a live leaked buffer and 48 from GP, writes the READY
        // flag, then loops on pause() and never returns, so clobbering registers is harmless.
        unsafe {
            std::arch::asm!(
                "vmovdqu ymm0, [rdi]",
                "vmovdqu ymm1, [rdi + 32]",
                "vmovdqu ymm2, [rdi + 64]",
                "vmovdqu ymm3, [rdi + 96]",
                "vmovdqu ymm4, [rdi + 128]",
                "vmovdqu ymm5, [rdi + 160]",
                "vmovdqu ymm6, [rdi + 192]",
                "vmovdqu ymm7, [rdi + 224]",
                "vmovdqu ymm8, [rdi + 256]",
                "vmovdqu ymm9, [rdi + 288]",
                "vmovdqu ymm10, [rdi + 320]",
                "vmovdqu ymm11, [rdi + 352]",
                "vmovdqu ymm12, [rdi + 384]",
                "vmovdqu ymm13, [rdi + 416]",
                "vmovdqu ymm14, [rdi + 448]",
                "vmovdqu ymm15, [rdi + 480]",
                "mov r8, [rsi]",
                "mov r9, [rsi + 8]",
                "mov r12, [rsi + 16]",
                "mov r13, [rsi + 24]",
                "mov r14, [rsi + 32]",
                "mov r15, [rsi + 40]",
                "mov dword ptr [rdx], 1",
                "2:",
                "mov eax, 34",
                "syscall",
                "jmp 2b",
                in("rdi") ymm.as_ptr(),
                in("rsi") GP.as_ptr(),
                in("rdx") READY.as_ptr(),
                options(noreturn)
            );
        }
    });
    while READY.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    criu_test_workloads::say(&format!("READY {}", TID.load(Ordering::SeqCst)));
    // Stay until stdin closes.
    while criu_test_workloads::read_stdin_line().is_some() {}
}
