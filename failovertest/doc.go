// Package failovertest provides fake Azure OpenAI regions and a fake public OpenAI API that answer the way the
// real services do on the wire, with scripted replies, for testing code that uses package failover. A fake region
// serves both of Azure's surfaces, the classic one (the deployment in the path, a dated api-version) and the v1 one
// (the deployment in the body's model), as a real resource does.
package failovertest
