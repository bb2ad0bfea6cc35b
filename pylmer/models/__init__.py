"""Model kinds fitted by R: each a sibling class over one shared base."""
