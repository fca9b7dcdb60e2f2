// Package gateway serves a failover.Client over HTTP in the shapes of the Azure OpenAI and OpenAI APIs, so that
// callers in any language get the same failover by changing only their endpoint. cmd/aoai-gateway runs it.
package gateway
