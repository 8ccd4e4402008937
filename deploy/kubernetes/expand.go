package kubernetes

import "strings"

// Expand resolves the $(VAR) references in s as the kubelet does for a
// container's command, args and env values: $(NAME) becomes lookup(NAME)
// when that is defined and stays as written when it is not; $$ is an
// escaped $, so $$(NAME) is the literal text $(NAME); a $ before anything
// else, and an unclosed $(, stay as written. missing collects the names
// that were referenced but not defined (the kubelet says nothing about
// them; a manifest that has any is wrong).
func Expand(s string, lookup func(name string) (string, bool)) (out string, missing []string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// Unclosed: the kubelet copies "$(" and goes on after it.
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
				missing = append(missing, name)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), missing
}
