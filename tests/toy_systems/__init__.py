"""Systems that live only in tests: each is one file shaped like a module of
``ml4dynamics.systems``, dropped into a copy of the package to show that a new system needs
nothing else (see ``tests/test_toy_system.py``). The real package never registers them."""
