"""``pyexport export``: write the TorchScript model file of a checkpoint
(:func:`pyexport.export.export_checkpoint`)."""
from ..outputs import refuse_overwriting_inputs


def add_export_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a TorchScript model (the model contract) from a checkpoint",
                              description="Script a checkpoint into the .pt file that pair_style mlff, "
                                          "the ASE calculator and the efg tools load.")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True, help="model file to write (e.g. model.pt)")
    p.add_argument("--dtype", choices=("float64", "float32"), help="override the checkpoint's dtype")
    p.add_argument("--no-active-set", dest="active_set", action="store_false",
                   help="leave the potential's active set out: same energies and forces, a much smaller "
                        "file, but no extrapolation grade (no compute mlff/grade, no γ guard)")
    p.set_defaults(func=run_export_command)


def run_export_command(args) -> int:
    from ..export import export_checkpoint

    refuse_overwriting_inputs([args.checkpoint], [args.output])
    meta = export_checkpoint(args.checkpoint, args.output, args.dtype, active_set=args.active_set)
    print(f"wrote {args.output}: {meta['kind']} {meta.get('model_type', '')} elements={meta['elements']} "
          f"cutoff={meta['cutoff']} Å dtype={meta['dtype']}")
    if "export_check_max_force_difference" in meta:
        print(f"reloaded file vs in-memory model: max |ΔF| = {meta['export_check_max_force_difference']:.2e} eV/Å")
    return 0
