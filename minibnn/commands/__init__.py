"""One module per `minibnn` subcommand, each with add_arguments(parser) and run(args)."""
