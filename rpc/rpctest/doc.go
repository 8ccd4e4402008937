// Package rpctest runs real consensus gRPC servers and clients on loopback
// TCP for the tests of the rpc layer and of the layers built on it. Everything
// it starts is stopped by the test's cleanup.
package rpctest
