// Package storetest has an in-memory failover.Store, for tests and for clients that share state within one
// process, and the tests every failover.Store must pass (Run).
package storetest
