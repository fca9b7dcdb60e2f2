// Package redisstore shares what failover Clients learn (rests, missing models, half-open probes, which backend
// holds a stored response, file or batch) between the replicas of a fleet through Redis. See Store.
package redisstore
