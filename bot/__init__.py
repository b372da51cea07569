"""gridbot core: configuration, the app that wires everything, transports, dispatch."""
