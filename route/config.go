package route

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(Config{})
}

// Config is the catalog of models written in the config itself, the one
// the Caddyfile's model blocks fill.
type Config struct {
	// Models are the models served, each with its upstreams.
	Models []*Model `json:"models,omitempty"`

	byName map[string]*Model
}

// CaddyModule returns the Caddy module information.
func (Config) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.config",
		New: func() caddy.Module { return new(Config) },
	}
}

// Provision provisions every model and indexes them by name.
func (c *Config) Provision(ctx caddy.Context) error {
	c.byName = make(map[string]*Model, len(c.Models))
	for _, m := range c.Models {
		if err := m.Provision(ctx); err != nil {
			return err
		}
		if _, dup := c.byName[m.Name]; dup {
			return fmt.Errorf("model '%s' is defined twice", m.Name)
		}
		c.byName[m.Name] = m
	}
	return nil
}

// Cleanup lets go of the models' shared state.
func (c *Config) Cleanup() error {
	for _, m := range c.Models {
		m.Cleanup()
	}
	return nil
}

// Lookup returns the named model, or nil.
func (c *Config) Lookup(name string) *Model { return c.byName[name] }

// List returns the models in config order.
func (c *Config) List() []*Model { return c.Models }

// Interface guards
var (
	_ Catalog            = (*Config)(nil)
	_ caddy.Provisioner  = (*Config)(nil)
	_ caddy.CleanerUpper = (*Config)(nil)
)
