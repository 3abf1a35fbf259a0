"""The permission gate: the lowest layer (pure Python, no engine or Qt imports).

Senses, capabilities, rules, the gate, the prompt broker, settings, the audit log and
secrets arrive with the permission issue (#3); every sense and tool will pass through it.
"""
