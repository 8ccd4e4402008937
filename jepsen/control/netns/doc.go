// Package netns owns the harness's private network: it creates a named
// Linux network namespace, re-executes the runner inside it, and deletes it
// afterwards; inside, it installs and removes the packet filters (nftables)
// and traffic shaping (tc) that partition, drop and delay traffic between
// replicas.
//
// Everything the harness starts (replicas, PostgreSQL, clients) talks over
// the namespace's loopback device, so faults never touch the host's network.
// Replica i binds 127.0.0.(10+i); every 127.0.0.0/8 address is local to lo,
// so no addresses need to be added.
//
// Partitions and loss are nftables rules in one table (inet jepsen) on the
// input hook, matching packets by source and destination address: a dropped
// packet vanishes silently, as on a real network, instead of failing the
// sender's system call. Latency uses tc netem when the kernel has it, and
// otherwise a token-bucket rate limit (tbf) on lo, whose queue delays every
// packet once the offered load exceeds the rate.
package netns
