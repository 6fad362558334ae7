"""The AMP edge: connections, the gate, authentication, the caps on who may connect."""
