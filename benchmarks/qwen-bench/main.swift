import Quant
print("qwen-bench: not implemented yet")
