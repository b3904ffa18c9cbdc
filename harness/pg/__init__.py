"""PostgreSQL for runs: a throwaway server or a named one (`server`), and the attack catalogue
against its roles (`attacks`)."""
