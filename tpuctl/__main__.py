from tpuctl.cli.main import main

main()
