//! Network: devices and veth pairs over rtnetlink, sock_diag queries, TCP repair and the
//! network lock. Dump and restore halves live side by side per object kind.
