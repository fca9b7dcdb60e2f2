package failover

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/joho/godotenv"
)

// readEnv merges the dotenv file at path under the process environment. A missing file is an empty one unless
// required: NewFromEnv's .env is optional, NewFromEnvFile's path is not.
func readEnv(path string, required bool) (map[string]string, error) {
	env, err := godotenv.Read(path)
	var unreadable *fs.PathError // a directory, a file without read permission: what the system says, no content
	switch {
	case errors.Is(err, fs.ErrNotExist) && !required:
		env = make(map[string]string)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("failover: %s: cannot be read: %w", path, fs.ErrNotExist)
	case errors.As(err, &unreadable):
		return nil, fmt.Errorf("failover: %s: cannot be read: %w", path, unreadable.Err)
	case err != nil:
		// godotenv's messages quote the file's text, which holds keys: say where to look, not what is there.
		return nil, fmt.Errorf("failover: %s: cannot be parsed as a dotenv file (details withheld: they would quote its secrets); check its quoting and variable names", path)
	}
	for _, kv := range os.Environ() {
		// An empty process variable (docker-compose's ${UNSET}, say) counts as unset: it does not hide the file.
		if k, v, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(v) != "" {
			env[k] = v
		}
	}
	return env, nil
}

// perRegionVars are the variables that take a region number.
var perRegionVars = []string{EnvEndpoint, EnvAPIKey, EnvRegionName, EnvDeployments, EnvAPIVersion, EnvPriority, EnvWeight, EnvAuth, EnvKind}

var describe = map[string]string{EnvEndpoint: "endpoint", EnvAPIKey: "API key", EnvRegionName: "name",
	EnvDeployments: "deployments", EnvAPIVersion: "API version", EnvPriority: "priority", EnvWeight: "weight",
	EnvAuth: "authentication", EnvKind: "kind"}

// envScan is the environment as read, before any value is parsed: trimmed strings, each region's with the
// variable it was read from. Empty variables count as unset, as in a .env template.
type envScan struct {
	regions []envRegion       // by ascending region number
	globals map[string]string // every variable by its name, for the unsuffixed ones (FAILOVER_MODEL, …)
	ignored []string          // variables that look like a region's but end in something other than a number
	errs    []error           // region numbers out of range, and two spellings of one value that differ
}

// envRegion is what the environment says of one region.
type envRegion struct {
	n      int
	values map[string]string // by the variable's base name (EnvEndpoint, …)
	vars   map[string]string // by base name: the variable each value was read from
}

// name is the variable that sets the region's base value: the one it was read from, or else the one that would.
func (r *envRegion) name(base string) string {
	if v := r.vars[base]; v != "" {
		return v
	}
	return fmt.Sprintf("%s_%d", base, r.n)
}

// scanEnv sorts the variables into regions and globals. It parses nothing but region numbers.
func scanEnv(env map[string]string) envScan {
	s := envScan{globals: make(map[string]string, len(env))}
	regions := map[int]*envRegion{}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys) // so that errors come in a stable order
	for _, k := range keys {
		v := strings.TrimSpace(env[k])
		if v == "" {
			continue
		}
		s.globals[k] = v
		s.scanRegionVar(regions, k, v)
	}
	numbers := make([]int, 0, len(regions))
	for n := range regions {
		numbers = append(numbers, n)
	}
	sort.Ints(numbers)
	for _, n := range numbers {
		s.regions = append(s.regions, *regions[n])
	}
	return s
}

// scanRegionVar files variable k, if it is a region's, under its region.
func (s *envScan) scanRegionVar(regions map[int]*envRegion, k, v string) {
	if k == EnvEndpoint || k == EnvAPIKey || k == EnvRegionName {
		s.set(regions, 1, k, k, v) // the unsuffixed spellings name region 1
		return
	}
	for _, base := range perRegionVars {
		suffix, ok := strings.CutPrefix(k, base+"_")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(suffix)
		switch {
		case err != nil || suffix[0] == '+' || suffix[0] == '-':
			// Not a region number: someone else's variable, such as AZURE_OPENAI_API_KEY_SECONDARY.
			s.ignored = append(s.ignored, k)
		case n < 1 || n > 999:
			s.errs = append(s.errs, configErr(k, "has region number %d; expected 1 to 999", n))
		default:
			s.set(regions, n, base, k, v)
		}
		return
	}
}

// set records variable name's value as region n's base value. Two spellings of one value (AZURE_OPENAI_ENDPOINT
// and AZURE_OPENAI_ENDPOINT_1, or _01) may agree; if they differ, neither is taken for the other.
func (s *envScan) set(regions map[int]*envRegion, n int, base, name, value string) {
	r := regions[n]
	if r == nil {
		r = &envRegion{n: n, values: map[string]string{}, vars: map[string]string{}}
		regions[n] = r
	}
	if prev, ok := r.values[base]; ok {
		if prev != value {
			s.errs = append(s.errs, configErr(name, "conflicts with %s: both set region %d's %s, differently; keep one", r.vars[base], n, describe[base]))
		}
		return
	}
	r.values[base], r.vars[base] = value, name
}
