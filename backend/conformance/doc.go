// Package conformance is the executable form of the persist consensus
// contract (docs/architecture.md §2, Wire contract and errors, whose §2.5
// lists the numbered cases) and of the fencing rules (docs/architecture.md
// §5, Fencing). Every implementation of backend.Consensus, storage or layer,
// runs it with one call from its own tests:
//
//	conformance.RunConsensus(t, func(t *testing.T) backend.Consensus { ... })
//	conformance.Run(t, func(t *testing.T) backend.Fencer { ... })
//
// The store factory returns a fresh, empty store for every subtest and
// registers its own cleanup. Cases assert exact values: exact bytes, exact
// slices, exact outcomes, and exact error classes (errors.Is on the backend
// sentinels plus backend.IsDeterminate). The suite joins every goroutine it
// starts before it returns.
package conformance
