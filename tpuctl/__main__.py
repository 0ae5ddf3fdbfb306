from tpuctl.cli.entry import main

main()
