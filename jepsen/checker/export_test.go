package checker

import "github.com/hacommit/committer/jepsen/history"

// CheckWithMaxJointOps is Check with a bound other than maxJointOps on the
// operations of one search of linked keys.
func CheckWithMaxJointOps(events []history.Event, opts Options, maxOps int) Result {
	return check(events, opts, maxOps)
}
