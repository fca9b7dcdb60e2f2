// Package failover sends Azure OpenAI requests to the first of an ordered list of regions that can serve them,
// moving on when a region is rate-limited or failing and falling back to the public OpenAI API when all are out.
package failover
