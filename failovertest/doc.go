// Package failovertest provides fake Azure OpenAI regions and a fake public OpenAI API that answer the way the
// real services do on the wire, with scripted replies, for testing code that uses package failover.
package failovertest
