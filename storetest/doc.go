// Package storetest has an in-memory failover.Store (and failover.OwnerStore), for tests and for clients that
// share state within one process, and the tests every failover.Store must pass (Run), with those of
// failover.OwnerStore for a store that implements it.
package storetest
