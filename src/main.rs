//! The `criu` binary.
fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == criu::commands::mount_helper::NAME)
    {
        std::process::exit(criu::commands::mount_helper::main(&args))
    }
    if args
        .get(1)
        .is_some_and(|a| a == criu_actors::restore::watchdog::NAME)
    {
        std::process::exit(criu::commands::restore_watchdog::main())
    }
    if args
        .get(1)
        .is_some_and(|a| a == criu_actors::network::keeper::NAME)
    {
        std::process::exit(criu::commands::network_keeper::main())
    }
    criu::interrupt::install();
    std::process::exit(criu::run(args));
}
