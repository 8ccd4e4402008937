// Package delayproxy puts a TCP server a fixed distance away, for
// benchmarks that must see how the system behaves with a database that is
// not on the same machine. The kernels the benchmarks run on have no netem
// (tc qdisc ... delay), so the latency is added in user space instead, by a
// proxy between the client and the server.
//
// The delay is the round-trip time the proxy adds: every byte waits half of
// it on the way to the server and half on the way back, so a request and
// its response together take the whole delay longer. Bytes are delayed, not
// throttled: the stream stays pipelined, and bandwidth is what the loopback
// gives.
package delayproxy
