// Package failover sends Azure OpenAI requests to the first of a list of regions that can serve them, remembering
// which regions rest after 429s or failures and which lack a model, and falling back to the public OpenAI API.
package failover
