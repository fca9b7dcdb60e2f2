// Package redisstore shares what failover Clients learn (rests, missing models, half-open probes) between the
// replicas of a fleet through Redis. See Store.
package redisstore
