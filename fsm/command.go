package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// commandVersion is the version written into every command. A replica refuses
// (and reports) commands from a newer version rather than misapplying them.
const commandVersion = 1

// Op names a command. The names are part of the on-disk log format.
type Op string

const (
	OpSetMember    Op = "set_member"
	OpRemoveMember Op = "remove_member"
	OpRecordEpoch  Op = "record_epoch"
	OpSetHotShards Op = "set_hot_shards"
	// OpSetClusterID names the cluster once: the first one applied wins.
	OpSetClusterID Op = "set_cluster_id"
	// OpRetainMembers forgets every member record but the listed ones:
	// recovery from a lost quorum applies it, so that the records match the
	// rewritten configuration (docs/architecture.md §8.3).
	OpRetainMembers Op = "retain_members"
)

// Command is one entry of the Raft log.
type Command struct {
	Version   int      `json:"v"`
	Op        Op       `json:"op"`
	Member    *Member  `json:"member,omitempty"`
	MemberID  string   `json:"member_id,omitempty"`
	Epoch     *Epoch   `json:"epoch,omitempty"`
	HotShards []string `json:"hot_shards,omitempty"`
	ClusterID string   `json:"cluster_id,omitempty"`
	MemberIDs []string `json:"member_ids,omitempty"`
}

// ErrUnsupportedVersion is returned for a command or snapshot written by a
// newer release.
var ErrUnsupportedVersion = errors.New("unsupported format version")

// SetMember returns the encoded command that adds or updates m.
func SetMember(m Member) []byte { return encode(Command{Op: OpSetMember, Member: &m}) }

// RemoveMember returns the encoded command that forgets a member.
func RemoveMember(id string) []byte { return encode(Command{Op: OpRemoveMember, MemberID: id}) }

// RecordEpoch returns the encoded command that records a new leader epoch.
func RecordEpoch(e Epoch) []byte { return encode(Command{Op: OpRecordEpoch, Epoch: &e}) }

// SetClusterID returns the encoded command that names the cluster, unless it
// already has a name.
func SetClusterID(id string) []byte { return encode(Command{Op: OpSetClusterID, ClusterID: id}) }

// RetainMembers returns the encoded command that forgets the records of every
// member not in ids.
func RetainMembers(ids []string) []byte {
	return encode(Command{Op: OpRetainMembers, MemberIDs: ids})
}

// SetHotShards returns the encoded command that replaces the hot-shard hints.
func SetHotShards(shards []string) []byte {
	return encode(Command{Op: OpSetHotShards, HotShards: shards})
}

func encode(c Command) []byte {
	c.Version = commandVersion
	b, err := json.Marshal(c)
	if err != nil {
		// Command holds only strings and integers; Marshal cannot fail.
		panic(fmt.Sprintf("fsm: encoding command: %v", err))
	}
	return b
}

// Decode parses a command, rejecting unknown versions and malformed input.
func Decode(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("fsm: decoding command: %w", err)
	}
	if c.Version < 1 || c.Version > commandVersion {
		return Command{}, fmt.Errorf("fsm: command version %d: %w", c.Version, ErrUnsupportedVersion)
	}
	switch c.Op {
	case OpSetMember:
		if c.Member == nil || c.Member.ID == "" {
			return Command{}, fmt.Errorf("fsm: %s without a member id", c.Op)
		}
	case OpRemoveMember:
		if c.MemberID == "" {
			return Command{}, fmt.Errorf("fsm: %s without a member id", c.Op)
		}
	case OpRecordEpoch:
		if c.Epoch == nil {
			return Command{}, fmt.Errorf("fsm: %s without an epoch", c.Op)
		}
	case OpSetHotShards:
	case OpSetClusterID:
		if c.ClusterID == "" {
			return Command{}, fmt.Errorf("fsm: %s without an id", c.Op)
		}
	case OpRetainMembers:
		// An empty list would forget every member, which no configuration
		// (it always has a voter) asks for.
		if len(c.MemberIDs) == 0 || slices.Contains(c.MemberIDs, "") {
			return Command{}, fmt.Errorf("fsm: %s needs member ids", c.Op)
		}
	default:
		return Command{}, fmt.Errorf("fsm: unknown op %q", c.Op)
	}
	return c, nil
}
