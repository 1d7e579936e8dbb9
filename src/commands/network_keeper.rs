//! `criu __network-keeper`: the other half of `criu_actors::network::keeper`. It ignores the
//! signals a terminal sends, so that a Ctrl-C meant for criu does not take the undo away with
//! it, and serves criu on its stdin (a unix socket).

pub fn main() -> i32 {
    criu_sys::signals::ignore_terminal_signals();
    // Nothing of criu's (an RPC socket, inherited fds) stays open through the keeper.
    let _ = criu_sys::fd::close_from(3);
    match criu_sys::fd::own_inherited(0) {
        Ok(input) => criu_actors::network::keeper::serve(input),
        Err(e) => {
            eprintln!("criu network keeper: no input socket: {e}");
            1
        }
    }
}
