// Package freeport picks TCP ports that are free at the moment of asking,
// for tests and harnesses that must tell a server which port to listen on
// before it starts (a postmaster, a replica configured by flags) rather than
// letting it bind port 0 itself.
//
// The answer can go stale: between the moment a port is chosen and the
// moment the server binds it, another process may take it. Callers that
// cannot tolerate that retry the start with fresh ports.
package freeport
