// cpp-httplib 0.11 listens with a backlog of 5 connections (CPPHTTPLIB_LISTEN_BACKLOG, compiled
// into Debian's library): a burst of clients then overflows the kernel's accept queue, and some of
// them see their connection reset or stall. Shared by the servers and the load balancer.
#pragma once

namespace servelab {

/// Widens the accept queue of this process's listening socket bound to `port` to SOMAXCONN.
/// Calling listen() again on a listening socket only changes its backlog (Linux), so the socket
/// is found by its port.
void widen_listen_backlog(int port);

}  // namespace servelab
