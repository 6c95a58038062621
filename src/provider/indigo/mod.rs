//! WebARENA Indigo.
