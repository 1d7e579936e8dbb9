//! Namespaces: identify, dump and restore the namespaces of a tree (pid, mnt, net, uts, ipc,
//! user, cgroup, time). Each namespace kind gets a dump half and a restore half side by side.
