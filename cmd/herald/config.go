package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Configuration file support for `herald serve --config FILE`: a YAML
// mapping whose keys are the flag names, e.g.
//
//	amqp: ":5672"
//	data-dir: /var/lib/herald
//	heartbeat: 30s
//	tls-cert: /etc/herald/cert.pem
//
// Precedence, lowest first: built-in defaults, the file, HERALD_*
// environment variables, command-line flags.

// configPath finds --config in args (or HERALD_CONFIG).
func configPath(args []string) string {
	for i, a := range args {
		for _, p := range []string{"--config=", "-config="} {
			if v, ok := strings.CutPrefix(a, p); ok {
				return v
			}
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			return args[i+1]
		}
	}
	return os.Getenv("HERALD_CONFIG")
}

// applyConfigFile sets flags from the YAML file at path.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read the config file: %w", err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("%s is not valid YAML: %w", path, err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		if k == "config" || fs.Lookup(k) == nil {
			errs = append(errs, fmt.Errorf("%s: unknown key %q (the keys are the flag names of `herald serve -h`)", path, k))
			continue
		}
		v := values[k]
		s := fmt.Sprint(v)
		if list, ok := v.([]any); ok { // e.g. cors-origins: [a, b]
			parts := make([]string, len(list))
			for i, x := range list {
				parts[i] = fmt.Sprint(x)
			}
			s = strings.Join(parts, ",")
		}
		if err := fs.Set(k, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: invalid %s: %q: %v", path, k, s, err))
		}
	}
	return errors.Join(errs...)
}
