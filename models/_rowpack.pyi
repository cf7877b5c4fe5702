import numpy as np
import numpy.typing as npt

def pack_rows(rows: list[list[float]], width: int) -> npt.NDArray[np.float64]: ...
