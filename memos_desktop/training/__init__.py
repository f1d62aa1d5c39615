"""Parameter memory (infrastructure layer): LoRA adapters distilled from stable memories.

`data` builds examples from facts, `trainer` trains (MLX), `evaluate` decides whether an adapter
is kept, `export` writes MLX and GGUF adapter files, `adapters` registers them as sealed
`parameter` cubes and loads them into a runtime, `distill` runs the whole chain and `job` runs it
in the background. Importing this package imports no ML library.
"""
