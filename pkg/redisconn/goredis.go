package redisconn

import "github.com/redis/go-redis/v9"

// Client sets a go-redis client's dialer and credentials to c's, so that it speaks TLS and logs
// in exactly as c does. Use it instead of the options' own Addr-level TLSConfig and Password.
func (c *Connector) Client(o *redis.Options) {
	o.Dialer = c.Dial
	o.CredentialsProviderContext = c.Credentials
	o.Username, o.Password, o.TLSConfig = "", "", nil
}

// ClusterClient does what Client does for a Redis Cluster client.
func (c *Connector) ClusterClient(o *redis.ClusterOptions) {
	o.Dialer = c.Dial
	o.CredentialsProviderContext = c.Credentials
	o.Username, o.Password, o.TLSConfig = "", "", nil
}

// UniversalClient does what Client does for redis.NewUniversalClient's options.
func (c *Connector) UniversalClient(o *redis.UniversalOptions) {
	o.Dialer = c.Dial
	o.CredentialsProviderContext = c.Credentials
	o.Username, o.Password, o.TLSConfig = "", "", nil
}
