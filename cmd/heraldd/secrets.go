package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// secret is a setting that must never have to travel on the command line, where every
// user of the machine can read it (ps, /proc/PID/cmdline). It comes from, first to
// last: the flag --NAME (when the setting has one), the flag --NAME-file, the
// variable ENV, or the variable ENV_FILE. A file's surrounding whitespace (its
// trailing newline) is not part of the secret.
type secret struct {
	name, env string
	into      *string
	value     string // --NAME
	file      string // --NAME-file
	plain     bool   // whether --NAME exists
}

// secretVar defines --NAME (when plain) and --NAME-file on fs for a secret read into
// into; what names the secret in usages. The flags' defaults stay empty: a default
// taken from the environment would be printed by -h.
func secretVar(fs *flag.FlagSet, into *string, name, env string, plain bool, what, usage string) *secret {
	s := &secret{name: name, env: env, into: into, plain: plain}
	if plain {
		fs.StringVar(&s.value, name, "", fmt.Sprintf("%s (%s); on the command line it shows in ps to every user of "+
			"the machine: prefer --%s-file or the environment", usage, env, name))
		fs.StringVar(&s.file, name+"-file", "", fmt.Sprintf("file holding the %s (%s_FILE)", what, env))
	} else {
		fs.StringVar(&s.file, name+"-file", "", fmt.Sprintf("file holding the %s: %s (%s_FILE, or the %s itself in %s)",
			what, usage, env, what, env))
	}
	return s
}

// resolve sets the secret from where it was given; set names the flags given on the
// command line. It reports whether the secret itself came on the command line.
func (s *secret) resolve(set map[string]bool, getenv func(string) string) (onCommandLine bool, err error) {
	fileFlag, fileEnv := s.name+"-file", s.env+"_FILE"
	switch {
	case set[s.name] && set[fileFlag]:
		return false, fmt.Errorf("give --%s or --%s, not both", s.name, fileFlag)
	case set[s.name]:
		*s.into = s.value
		return true, nil
	case set[fileFlag]:
		return false, s.read("--"+fileFlag, s.file)
	case getenv(s.env) != "" && getenv(fileEnv) != "":
		return false, fmt.Errorf("set %s or %s, not both", s.env, fileEnv)
	case getenv(s.env) != "":
		*s.into = getenv(s.env)
	case getenv(fileEnv) != "":
		return false, s.read(fileEnv, getenv(fileEnv))
	}
	return false, nil
}

func (s *secret) read(from, name string) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return fmt.Errorf("%s: %s is empty", from, name)
	}
	*s.into = v
	return nil
}

// hasPassword tells whether a Redis URL carries a password.
func hasPassword(redisURL string) bool {
	u, err := url.Parse(redisURL)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}
