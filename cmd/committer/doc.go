// Command committer runs and operates the committer service.
//
//	committer serve --backend bolt:///var/lib/committer/consensus.db
//	committer serve --backend postgres://committer@db:5432/persist --grpc-addr :6882
//
// Every flag can also be set through an environment variable named
// COMMITTER_ followed by the flag name in upper case with dashes turned into
// underscores (--grpc-addr: COMMITTER_GRPC_ADDR). A flag given on the command
// line wins over its variable.
package main
