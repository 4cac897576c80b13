"""Tools the model may call in Folio's own chat: declared with a JSON schema and a capability,
validated, run with a time limit, and approved by the user unless they only read the library."""
