// Package faultdelay names the points in a replica where a correctness test
// may hold the replica for a while, so that a timing window the harness must
// explore is wide enough to be entered on every fault instead of by luck.
//
// A delay never changes what a replica decides, only when: the safe code
// paths stay correct under any delay, and the correctness harness checks
// exactly that, alongside the canary the delay exposes
// (docs/jepsen.md, "Canaries"). Delays are set only through the hidden
// `committer serve --fault-delay POINT=DURATION` flag.
package faultdelay
